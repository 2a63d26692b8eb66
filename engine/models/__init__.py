"""Models fitted on the engine's own state: segments, CLV, recommendations, rules, next-purchase dates."""
