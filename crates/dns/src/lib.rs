//! weft's embedded DNS: record store, query answering, upstream forwarding.
