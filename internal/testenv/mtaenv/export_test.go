package mtaenv

import "testing"

// SetPort makes the instances started until the test ends get their SMTP
// ports from port, for a test that hands out a taken one.
func SetPort(t *testing.T, port func(testing.TB) int) {
	old := mtaPort
	mtaPort = port
	t.Cleanup(func() { mtaPort = old })
}
