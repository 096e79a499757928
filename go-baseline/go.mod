module pingora-parity/go-baseline

go 1.26.8

require (
	github.com/coder/websocket v1.8.15 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
)
