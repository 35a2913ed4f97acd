module github.com/fluxcapacitor/flux/mysqlstore

go 1.26.0

replace github.com/fluxcapacitor/flux => ../

require (
	github.com/fluxcapacitor/flux v0.1.0
	github.com/go-sql-driver/mysql v1.10.1
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
