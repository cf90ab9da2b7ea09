//! End-to-end test and example support for the ClusterCockpit metric workspace.
