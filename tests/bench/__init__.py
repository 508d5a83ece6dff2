"""Tests of the benchmark servers: the baseline and the ceiling, each run as a real process."""
