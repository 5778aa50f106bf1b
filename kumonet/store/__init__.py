"""The store: one contract (``contract``), an embedded SQLite backend and an
etcd backend, and the key layout (``trees``)."""
