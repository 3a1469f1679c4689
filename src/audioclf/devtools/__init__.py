"""Tools for the people who build audioclf: CI's pipeline check, the README's params table check,
and the feature benchmark. May import anything below it; nothing imports devtools.
"""
