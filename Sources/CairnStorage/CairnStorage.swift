// CairnStorage: placeholder until its issue lands; see ../shared/DESIGN.md.
