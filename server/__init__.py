"""The storypulse server: one poll loop, a durable store, a worker pool, live statistics.

Modules, one job each:
  cli        `storypulse server` / `storypulse worker`: parse options, wire, run
  config     the settings table (defaults + validate); configfile layers TOML/env under it
  loop       the one poll loop: every socket, timers, group commit, shutdown
  service    what requests and worker reports do (no sockets)
  state      the work in memory: queue, live tasks, open stories
  store      Peewee models and the bulk SQL of a turn (SQLite or PostgreSQL)
  stats      sliding rate windows, stats history, timer cadence (pure)
  pool       worker processes and their states; asks autoscale for a size
  autoscale  the pool-size policy (pure)
  worker     the worker process
"""
