"""VEE: validation, estimation and editing of interval register reads.

Raw reads stay as received; this room judges each meter's local days with named rules,
fills gaps with estimates that conserve the register's energy, and records people's
edits and meter replacements, all as versions beside the raw read.

May import: model, storage, collector.config and collector.errors.
"""
