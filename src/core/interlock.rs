//! Delivery sessions, one per door: grant, watch, trip, relock.
