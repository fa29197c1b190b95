"""Tests of compose_kfp.build modules."""
