//! What each lock is doing, and whether its last command was confirmed in time.
