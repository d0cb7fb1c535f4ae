// The cairn executable.
print("cairn")
