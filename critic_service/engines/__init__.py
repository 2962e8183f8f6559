"""Engines: one small protocol (`engines.base.Engine`), several implementations, built by `engines.factory`."""
