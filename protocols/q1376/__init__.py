"""Q/GDW 1376.1-2013, master station ↔ concentrator, as pure functions over bytes.

Split like the DL/T 645 codec so each part can be pinned on its own: `frame` (the link
frame and its control, address, SEQ and auxiliary fields), `units` (DA/DT: which points
and which functions a data unit names), `formats` (the standard's appendix A data
formats), `items` (the layouts of the data units a head-end sends and reads) and `events`
(class 3 ERC records). Nothing here touches a socket or a clock.
"""
