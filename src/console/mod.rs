//! The web console (work in progress).
