package natsrelay

// Internals exported to the tests of package natsrelay_test.
var (
	Covers  = covers
	Message = message
)
