module kubectl-release.io/example-hooks/required-labels-go

go 1.23
