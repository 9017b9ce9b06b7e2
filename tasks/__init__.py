"""Prefect tasks and the plain, typed functions behind them, one concern per module."""
