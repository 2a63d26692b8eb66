"""The dashboard in headless Chromium through Playwright (marked `browser`)."""
