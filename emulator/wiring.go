package emulator

// buildServers builds the bundled servers on their bound listeners.
func (e *Emulator) buildServers() error {
	return nil
}

// buildAgents builds the handset's agents: mail integration, push receiver, registration.
func (e *Emulator) buildAgents() error {
	return nil
}
