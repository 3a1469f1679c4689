"""Tools for the people who build audioclf: CI's pipeline check, the README's params table check,
the feature benchmark and the data-parallel training benchmark. May import anything below it;
nothing imports devtools.
"""
