"""store: the local store on disk: its layout, safe paths inside it, atomic small writes, and
the lock that keeps two writers apart. May use the foundation only.
"""
