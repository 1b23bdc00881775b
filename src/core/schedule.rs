//! Weekly delivery windows in the door's time zone, and windows granted now.
