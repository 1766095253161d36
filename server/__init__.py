"""The storypulse server: one poll loop, a durable store, a worker pool, live statistics.

Modules, one job each:
  cli        `storypulse server` / `storypulse worker`: parse options, wire, run
  config     the settings table (defaults + validate); configfile layers TOML/env under it
  sockets    the three sockets with their options; `listen` binds them (CURVE beyond loopback)
  clock      the loop's clocks, one object a test can replace
  loop       the one poll loop over the sockets it is given: timers, group commit, shutdown
  service    what requests and worker reports do (no sockets); effects the loop takes
  state      the work in memory: the queue window, live tasks, open stories
  store      Peewee models and the bulk SQL of a turn (SQLite or PostgreSQL)
  outage     a database that refuses writes, as a state with a backoff (pure)
  dberrors   why the database cannot be opened, in one line (start-up)
  faults     what is dropped or failed on: counted, logged without flooding
  flow       lead and cycle times over a sliding window (pure)
  stats      sliding rate windows, stats history, timer cadence (pure)
  pool       worker processes and their states; the autoscaler owns target and bounds
  autoscale  the pool-size policy (pure)
  worker     the worker process
  claim      one server per database: a lock file (SQLite); claim_postgres: an advisory
             lock and a holder row (PostgreSQL)
  daemon     what operators see, wired to the loop at a few marked lines: health, metrics,
             systemd; http (the bounded endpoint), health (livez/readyz answers), metrics
             (counts and histograms the loop keeps, the snapshot), exposition (Prometheus
             text by prometheus_client), notify (sd_notify), logs (text or JSON lines)

Installed as `storypulse.server`; it never imports Qt, the desktop app or the
terminal commands (tests/test_layering.py).
"""
