"""Measures: classification metrics with bootstrap intervals, calibration, operating points, whether a model
reads the lungs, and the numbers that compare models."""
