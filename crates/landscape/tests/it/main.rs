//! Integration tests of the Landscape, on SQLite and on a real PostgreSQL server.

mod schema;
