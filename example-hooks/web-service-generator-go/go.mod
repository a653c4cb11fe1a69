module kubectl-release.io/example-hooks/web-service-generator-go

go 1.23
