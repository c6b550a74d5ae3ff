"""Foundations every chapter uses: audio, data, the real models, DER, errors, constants, config."""
