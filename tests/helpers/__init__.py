"""Helpers shared by test modules (a tiny tokenizer vocabulary, search fixtures)."""
