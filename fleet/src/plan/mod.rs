//! The pure planner: scheduling and rollouts as functions of desired state, observed state and time.
