"""Recovery: what the projections say about runs that died and jobs nobody started.

The health view judges each active run (its process, its lease) and each
pending job; the reconciler acts on that judgement with guarded events; the
monitor runs the reconciler on whichever process holds the leader lock;
force start is the operator's command that needs the health view to decide.
"""
