"""Tests of compose_kfp.pipeline modules."""
