"""The storypulse server: one poll loop, a durable store, a worker pool, live statistics.

Modules, one job each:
  cli        `storypulse server` / `storypulse worker`: parse options, wire, run
  config     the settings table (defaults + validate); configfile layers TOML/env under it
  sockets    the three sockets with their options; `listen` binds them (CURVE beyond loopback)
  clock      the loop's clocks, one object a test can replace
  wakeup     the wake-up pair a poll watches (signals, the forecast runner, the HTTP thread)
  loop       the one poll loop over the sockets it is given: timers, group commit, shutdown;
             the only place the service's effects become I/O
  service    the sans-I/O state machine: requests, worker reports and timers in, with the
             time; effects out; requests that must read committed data wait for the commit
  ops        what each request op does: one handler each, and the table that routes to them
  commit     the group commit: a turn's batch, the replies and events that wait on it, and
             what a refused commit answers (the outage path)
  effects    what the service hands the loop: replies, numbered events, messages to
             workers, a resize
  figures    the counts and rates behind the stats and the autoscaler, kept in step
  state      the work in memory and the scheduling rules: leases, stage order, blocks, WIP
  stages     each workflow stage's queue and figures, and the bottleneck rule
  backlog    the window of waiting work in memory over the backlog on disk
  records    the task and story records the state keeps
  store/     one class per database behind one interface (base); the tables in one place
             (schema); sqlite, postgres (+ pgsql, the text of its bulk writes)
  claim      one server per SQLite file: the lock beside it, naming its holder
  outage     a database that refuses writes, as a state with a backoff (pure)
  dberrors   why the database refused: one classifier, rendered at start-up and in an outage
  faults     what is dropped or failed on: counted, logged without flooding
  flow       lead and cycle times over a sliding window (pure)
  stats      sliding rate windows, stats history, timer cadence (pure)
  pool       one stage's worker processes and their states; its autoscaler owns target and bounds
  pools      a pool per stage of the workflow, seen as one by the loop
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
