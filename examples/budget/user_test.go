package budget_test

import (
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/examples/budget"
	"github.com/fluxcapacitor/flux/fluxtest"
)

func registry(t *testing.T) *flux.Registry {
	t.Helper()
	reg, err := budget.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestUser(t *testing.T) {
	reg := registry(t)
	signedUp := budget.UserSignedUp{UserID: fluxtest.DefaultID, Email: "ada@example.com", Firstname: "Ada", Lastname: "Byron",
		LanguagePreference: "en", IsConsentGiven: true, Roles: []string{"ROLE_USER"}}

	t.Run("a first name change is recorded", func(t *testing.T) {
		fluxtest.For[*budget.User](t, reg).
			Given(signedUp).
			When(func(u *budget.User) error { return u.ChangeFirstname("Augusta") }).
			Then(budget.UserFirstnameChanged{UserID: fluxtest.DefaultID, Firstname: "Augusta"})
	})
	t.Run("the same first name records nothing", func(t *testing.T) {
		fluxtest.For[*budget.User](t, reg).
			Given(signedUp).
			When(func(u *budget.User) error { return u.ChangeFirstname("Ada") }).
			Then()
	})
	t.Run("an empty first name is refused", func(t *testing.T) {
		fluxtest.For[*budget.User](t, reg).
			Given(signedUp).
			When(func(u *budget.User) error { return u.ChangeFirstname(" ") }).
			ThenError(budget.ErrInvalidUser)
	})
	t.Run("a deleted user cannot be renamed", func(t *testing.T) {
		fluxtest.For[*budget.User](t, reg).
			Given(signedUp, budget.UserDeleted{UserID: fluxtest.DefaultID}).
			When(func(u *budget.User) error { return u.ChangeLastname("King") }).
			ThenError(budget.ErrUserDeleted)
	})
}
