//! Helpers for end-to-end tests: labs with unique prefixes that always come down.
