"""The words of every message in Dutch, English and French.

Templates (`templates/`) lay the message out; these strings fill it. Placeholders are
`str.format` fields filled by `application.compose`.

The SMS texts (`sms.*`) stand alone: a resident may have given a phone number and no e-mail
address, so they never send the reader to an e-mail; the manage link (reason, history, a new
booking) follows them, and they are short enough for it to fit one SMS.
"""

from __future__ import annotations

from typing import Final

TEXTS: Final[dict[str, dict[str, str]]] = {
    "nl": {
        "org": "Stad Gent - Migratieloket",
        "greeting": "Beste {name},",
        "greeting_anonymous": "Beste,",
        "colon": ": ",
        "label_when": "Wanneer",
        "brussels_time": "{when} (Brusselse tijd)",
        "label_where": "Waar",
        "label_product": "Afspraak voor",
        "label_fee": "Kostprijs",
        "label_booking": "Referentie",
        "documents": "Breng deze documenten mee:",
        "early": "Kom niet vroeger dan 10 minuten voor uw afspraak: u wordt pas op uw tijdstip geholpen.",
        "manage": "Bekijk, verplaats of annuleer uw afspraak",
        "book_again": "Een nieuwe afspraak maken",
        "signoff": "Met vriendelijke groeten,",
        "auto": "Dit is een automatisch bericht; antwoorden op deze e-mail worden niet gelezen.",
        "please-confirm.subject": "Bevestig uw afspraak van {date}",
        "please-confirm.intro": "We houden dit tijdstip voor u vast tot {hold_until}. "
        "Bevestig uw afspraak via de link hieronder, anders vervalt ze.",
        "please-confirm.action": "Afspraak bevestigen",
        "confirmation.subject": "Uw afspraak is bevestigd: {date}",
        "confirmation.intro": "Uw afspraak is bevestigd. U vindt ze ook in de bijlage, voor uw agenda.",
        "rejection.subject": "Uw afspraak kon niet worden ingepland",
        "rejection.intro": "Het gekozen tijdstip ({when}) is helaas niet beschikbaar.",
        "rejection.alternatives": "Deze tijdstippen zijn nog vrij:",
        "rejection.none": "Kies een ander tijdstip via de link hieronder.",
        "cancellation.subject": "Uw afspraak van {date} is geannuleerd",
        "cancellation.by.resident": "U heeft uw afspraak van {when} geannuleerd.",
        "cancellation.by.staff": "Een medewerker van het loket heeft uw afspraak van {when} geannuleerd.",
        "cancellation.by.system": "Uw afspraak van {when} werd geannuleerd.",
        "cancellation.reason": "Reden: {reason}",
        "cancellation.sorry": "Onze excuses voor het ongemak.",
        "cancellation.waitlist": "Past geen enkel tijdstip? Kies een ander via de link hieronder, of schrijf u daar"
        " in op de wachtlijst: we mailen u zodra er een plaats vrijkomt.",
        "rescheduled.subject": "Uw afspraak is verplaatst naar {date}",
        "rescheduled.intro": "Uw afspraak van {old_when} is verplaatst naar {when}.",
        "expired.subject": "Uw afspraak is vervallen",
        "expired.intro": "U heeft uw afspraak van {when} niet op tijd bevestigd. Het tijdstip is weer vrij gegeven.",
        "reminder.subject": "Herinnering: uw afspraak op {date}",
        "reminder.intro": "Wij herinneren u aan uw afspraak van {when}.",
        "waitlist-slot.subject": "Er is een tijdstip vrijgekomen: {date}",
        "waitlist-slot.intro": "Er is een tijdstip vrijgekomen voor {product} op {when} in {location}. "
        "Het is niet voor u gereserveerd: wie eerst boekt, heeft het.",
        "waitlist-slot.action": "Dit tijdstip boeken",
        "waitlist-slot.unsubscribe": "Geen berichten meer over vrijgekomen tijdstippen? Uitschrijven",
        "sms.reminder": "Stad Gent: herinnering aan uw afspraak {when} in {location}. Kom max. 10 min vooraf.",
        "sms.cancellation": "Stad Gent: uw afspraak van {when} is geannuleerd.",
    },
    "en": {
        "org": "City of Ghent - Migration Counter",
        "greeting": "Dear {name},",
        "greeting_anonymous": "Hello,",
        "colon": ": ",
        "label_when": "When",
        "brussels_time": "{when} (Brussels time)",
        "label_where": "Where",
        "label_product": "Appointment for",
        "label_fee": "Fee",
        "label_booking": "Reference",
        "documents": "Please bring these documents:",
        "early": "Please don't come earlier than 10 minutes before your appointment: you are seen at your time.",
        "manage": "View, reschedule or cancel your appointment",
        "book_again": "Book a new appointment",
        "signoff": "Kind regards,",
        "auto": "This is an automatic message; replies to this e-mail are not read.",
        "please-confirm.subject": "Please confirm your appointment on {date}",
        "please-confirm.intro": "We are holding this time for you until {hold_until}. "
        "Please confirm your appointment with the link below, or it will expire.",
        "please-confirm.action": "Confirm appointment",
        "confirmation.subject": "Your appointment is confirmed: {date}",
        "confirmation.intro": "Your appointment is confirmed. It is also attached, for your calendar.",
        "rejection.subject": "We could not book your appointment",
        "rejection.intro": "Sorry, the time you chose ({when}) is not available.",
        "rejection.alternatives": "These times are still free:",
        "rejection.none": "Please choose another time with the link below.",
        "cancellation.subject": "Your appointment on {date} has been cancelled",
        "cancellation.by.resident": "You cancelled your appointment on {when}.",
        "cancellation.by.staff": "A member of staff cancelled your appointment on {when}.",
        "cancellation.by.system": "Your appointment on {when} has been cancelled.",
        "cancellation.reason": "Reason: {reason}",
        "cancellation.sorry": "We apologise for the inconvenience.",
        "cancellation.waitlist": "No time that suits you? Choose another with the link below, or join the waiting"
        " list there: we e-mail you as soon as a place comes free.",
        "rescheduled.subject": "Your appointment has been moved to {date}",
        "rescheduled.intro": "Your appointment on {old_when} has been moved to {when}.",
        "expired.subject": "Your appointment has expired",
        "expired.intro": "You did not confirm your appointment on {when} in time. The time has been released.",
        "reminder.subject": "Reminder: your appointment on {date}",
        "reminder.intro": "This is a reminder of your appointment on {when}.",
        "waitlist-slot.subject": "A time has become free: {date}",
        "waitlist-slot.intro": "A time has become free for {product} on {when} at {location}. "
        "It is not reserved for you: whoever books first gets it.",
        "waitlist-slot.action": "Book this time",
        "waitlist-slot.unsubscribe": "No more messages about free times? Unsubscribe",
        "sms.reminder": "City of Ghent: reminder of your appointment {when} at {location}. Come max. 10 min early.",
        "sms.cancellation": "City of Ghent: appointment {when} cancelled.",
    },
    "fr": {
        "org": "Ville de Gand - Guichet Migration",
        "greeting": "Bonjour {name},",
        "greeting_anonymous": "Bonjour,",
        "colon": "\u00a0: ",
        "label_when": "Quand",
        "brussels_time": "{when} (heure de Bruxelles)",
        "label_where": "Où",
        "label_product": "Rendez-vous pour",
        "label_fee": "Coût",
        "label_booking": "Référence",
        "documents": "Veuillez apporter ces documents :",
        "early": "Ne venez pas plus de 10 minutes avant votre rendez-vous : vous serez reçu(e) à votre heure.",
        "manage": "Consulter, déplacer ou annuler votre rendez-vous",
        "book_again": "Prendre un nouveau rendez-vous",
        "signoff": "Cordialement,",
        "auto": "Ceci est un message automatique ; les réponses à cet e-mail ne sont pas lues.",
        "please-confirm.subject": "Confirmez votre rendez-vous du {date}",
        "please-confirm.intro": "Nous vous réservons ce créneau jusqu'au {hold_until}. "
        "Confirmez votre rendez-vous avec le lien ci-dessous, sinon il expirera.",
        "please-confirm.action": "Confirmer le rendez-vous",
        "confirmation.subject": "Votre rendez-vous est confirmé : {date}",
        "confirmation.intro": "Votre rendez-vous est confirmé. Il est aussi joint, pour votre agenda.",
        "rejection.subject": "Votre rendez-vous n'a pas pu être réservé",
        "rejection.intro": "Désolés, l'heure choisie ({when}) n'est pas disponible.",
        "rejection.alternatives": "Ces créneaux sont encore libres :",
        "rejection.none": "Choisissez un autre créneau avec le lien ci-dessous.",
        "cancellation.subject": "Votre rendez-vous du {date} est annulé",
        "cancellation.by.resident": "Vous avez annulé votre rendez-vous du {when}.",
        "cancellation.by.staff": "Un membre du personnel a annulé votre rendez-vous du {when}.",
        "cancellation.by.system": "Votre rendez-vous du {when} a été annulé.",
        "cancellation.reason": "Motif : {reason}",
        "cancellation.sorry": "Veuillez nous excuser pour ce désagrément.",
        "cancellation.waitlist": "Aucun horaire ne vous convient ? Choisissez-en un autre avec le lien ci-dessous,"
        " ou inscrivez-vous-y sur la liste d'attente : nous vous écrirons dès qu'une place se libère.",
        "rescheduled.subject": "Votre rendez-vous est déplacé au {date}",
        "rescheduled.intro": "Votre rendez-vous du {old_when} est déplacé au {when}.",
        "expired.subject": "Votre rendez-vous a expiré",
        "expired.intro": "Vous n'avez pas confirmé à temps votre rendez-vous du {when}. Le créneau a été libéré.",
        "reminder.subject": "Rappel : votre rendez-vous du {date}",
        "reminder.intro": "Nous vous rappelons votre rendez-vous du {when}.",
        "waitlist-slot.subject": "Un créneau s'est libéré : {date}",
        "waitlist-slot.intro": "Un créneau s'est libéré pour {product} le {when} à {location}. "
        "Il ne vous est pas réservé : le premier qui réserve l'obtient.",
        "waitlist-slot.action": "Réserver ce créneau",
        "waitlist-slot.unsubscribe": "Ne plus recevoir de messages sur les créneaux libérés ? Se désinscrire",
        "sms.reminder": "Ville de Gand : rappel de votre rendez-vous {when} à {location}. Max. 10 min d'avance.",
        "sms.cancellation": "Ville de Gand : rendez-vous du {when} annulé.",
    },
}


def text(language: str, key: str, **values: object) -> str:
    table = TEXTS.get(language) or TEXTS["nl"]
    return table[key].format(**values)
