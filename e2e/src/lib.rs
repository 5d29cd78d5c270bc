//! The whole mapcache system on one machine. INTERIM skeleton: see issue #5.
