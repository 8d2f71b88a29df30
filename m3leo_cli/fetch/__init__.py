"""fetch: the transfer engine both editions share.

``transfer`` moves one file (resumable, verified, atomic); ``runner`` runs many jobs over one
client and keeps going; ``plan`` is the download plan type and its helpers; ``miniset`` is the
miniset edition's download. May use catalog/, hub/, store/ and the foundation.
"""
