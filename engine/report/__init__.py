"""The backtest report for people: rich tables in the terminal, or one self-contained HTML page."""

from engine.report.render import html, terminal, write_html

__all__ = ["html", "terminal", "write_html"]
