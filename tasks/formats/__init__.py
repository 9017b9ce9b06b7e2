"""Formats: a document's bytes to clean text with its heading structure (`ParsedText`).

Markdown, reStructuredText (and Sphinx sources), HTML main content, PDF, DOCX and records text.
"""
