//! A client of the Docker Engine API over its unix socket.
