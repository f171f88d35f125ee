"""Limits shared by several stages."""

MAX_COUNT = 2**53  # the largest whole number a float holds exactly
