"""store: the local store on disk: its layout, safe paths inside it, atomic small writes, the
lock that keeps two writers apart, and the run journal that makes a run's files durable with
one sync instead of an fsync each. May use the foundation only.
"""
