// CairnHTTP: placeholder.
