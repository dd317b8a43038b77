"""Inputs of the dashboard's actions."""

from django import forms

SILENCE_HOURS = [(1, "1 hour"), (4, "4 hours"), (8, "8 hours"), (24, "1 day"), (72, "3 days"), (168, "1 week")]


class AlertNoteForm(forms.Form):
    note = forms.CharField(required=False, max_length=1000, strip=True)


class SilenceForm(forms.Form):
    hours = forms.TypedChoiceField(choices=SILENCE_HOURS, coerce=int, initial=4)
    scope = forms.ChoiceField(
        choices=[("alert", "this alert's series"), ("rule", "every alert of the rule")], initial="alert"
    )
    comment = forms.CharField(required=False, max_length=1000, strip=True)
