"""Test helpers shared across areas: service fixtures, peers, small models."""
