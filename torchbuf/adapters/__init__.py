"""Adapters: one per env convention, each turning a step into a :class:`StepRecord`."""
