"""Serving: answering a visitor's questions over the trained models (never imports training code)."""
