// CairnServer: placeholder.
