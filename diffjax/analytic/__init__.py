"""Closed forms that do not depend on a trained network: the references tests check against."""
