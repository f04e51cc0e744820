"""The Gradio user interface of ThinkRec Explorer."""

from demo.app import build_demo

__all__ = ["build_demo"]
