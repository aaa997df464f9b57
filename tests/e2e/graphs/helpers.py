"""Sibling module imported by simple.py."""


def shout(text: str) -> str:
    return text.upper() + "!"
