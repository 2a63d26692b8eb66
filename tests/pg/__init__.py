"""Tests of the shared store on a real PostgreSQL server (marked `postgres`)."""
