"""The values the synthetic landing zone is drawn from, with their (deliberately uneven)
weights: genres, providers, languages, countries, genders, postcode regions, devices,
occupations, names, e-mail domains, title words, viewing hours and IP address ranges."""

GENRES = (
    "Drama", "Comedy", "Action", "Thriller", "Documentary", "Romance", "Crime", "Sci-Fi",
    "Animation", "Family", "Horror", "Fantasy", "Mystery", "Music", "Western",
)  # fmt: skip
GENRE_WEIGHTS = (18, 15, 11, 9, 8, 7, 6, 5, 5, 4, 4, 3, 2, 2, 1)

PROVIDER_GROUPS = (
    ("major_studio", 0.55, ("Apex Pictures", "Northstar Studios", "Meridian Entertainment", "Goldcrest Media")),
    ("independent", 0.30, ("Blue Door Films", "Kettle Lake Pictures", "Small Hours", "Fieldnote Films", "Paper Moon")),
    ("public_broadcaster", 0.10, ("Rundfunk Nord", "Channel Seven Public", "Radio Télévision Libre")),
    ("community", 0.05, ("Open Reel Collective", "Neighbourhood Cinema Club")),
)
LANGUAGES = ("en", "de", "fr", "es", "ja", "ko", "it", "sv", "hi", "pt", "tr", "pl")
LANGUAGE_WEIGHTS = (48, 14, 8, 7, 5, 4, 3, 3, 2, 2, 2, 2)

COUNTRIES = ("DE", "AT", "CH", "NL", "FR")
COUNTRY_WEIGHTS = (72, 10, 8, 6, 4)

GENDERS = ("F", "M", "X", "")
GENDER_WEIGHTS = (47, 46, 3, 4)

# Postcode region = first digit; ten regions of deliberately unequal size.
REGION_WEIGHTS = (4, 6, 9, 7, 11, 14, 8, 10, 18, 13)

DEVICE_TYPES = ("tv", "mobile", "web", "tablet")
DEVICE_WEIGHTS = (45, 30, 15, 10)

OCCUPATIONS = (
    "engineer", "teacher", "student", "nurse", "artist", "sales", "retired", "administrator",
    "programmer", "writer", "lawyer", "doctor", "homemaker", "technician", "other",
)  # fmt: skip

# (display name, ascii spelling for e-mail addresses)
FEMALE_NAMES = (
    ("Anna", "anna"), ("Lena", "lena"), ("Sophie", "sophie"), ("Marie", "marie"), ("Julia", "julia"),
    ("Laura", "laura"), ("Sarah", "sarah"), ("Emma", "emma"), ("Hannah", "hannah"), ("Leonie", "leonie"),
    ("Mia", "mia"), ("Clara", "clara"), ("Zoë", "zoe"), ("Fatma", "fatma"), ("Aylin", "aylin"),
    ("Katarzyna", "katarzyna"), ("Chloé", "chloe"), ("Ingrid", "ingrid"), ("Priya", "priya"), ("Elena", "elena"),
)  # fmt: skip
MALE_NAMES = (
    ("Lukas", "lukas"), ("Jonas", "jonas"), ("Leon", "leon"), ("Finn", "finn"), ("Paul", "paul"),
    ("Felix", "felix"), ("Maximilian", "maximilian"), ("Tim", "tim"), ("Jan", "jan"), ("Thomas", "thomas"),
    ("Jürgen", "juergen"), ("Mehmet", "mehmet"), ("Ahmed", "ahmed"), ("Piotr", "piotr"), ("Luca", "luca"),
    ("Mathis", "mathis"), ("Stefan", "stefan"), ("Noah", "noah"), ("Ravi", "ravi"), ("Daniel", "daniel"),
)  # fmt: skip
LAST_NAMES = (
    ("Müller", "mueller"), ("Schmidt", "schmidt"), ("Schneider", "schneider"), ("Fischer", "fischer"),
    ("Weber", "weber"), ("Meyer", "meyer"), ("Wagner", "wagner"), ("Becker", "becker"), ("Schulz", "schulz"),
    ("Hoffmann", "hoffmann"), ("Koch", "koch"), ("Richter", "richter"), ("Klein", "klein"), ("Wolf", "wolf"),
    ("Yılmaz", "yilmaz"), ("Kaya", "kaya"), ("Nowak", "nowak"), ("Kowalski", "kowalski"), ("Rossi", "rossi"),
    ("Dubois", "dubois"), ("Jansen", "jansen"), ("de Vries", "devries"), ("Gruber", "gruber"),
    ("Huber", "huber"), ("Bauer", "bauer"), ("Sharma", "sharma"), ("Nguyen", "nguyen"), ("Garcia", "garcia"),
)  # fmt: skip
EMAIL_DOMAINS = ("gmail.com", "gmx.de", "web.de", "outlook.com", "yahoo.com", "t-online.de", "icloud.com", "proton.me")
EMAIL_DOMAIN_WEIGHTS = (30, 18, 16, 12, 8, 7, 6, 3)

TITLE_ADJECTIVES = (
    "Silent", "Last", "Broken", "Golden", "Hidden", "Northern", "Crimson", "Lost", "Electric",
    "Quiet", "Midnight", "Wild", "Paper", "Distant", "Burning", "Frozen", "Little", "Secret",
)  # fmt: skip
TITLE_NOUNS = (
    "Harbor", "Orchard", "Signal", "Kingdom", "Letters", "Winter", "Frontier", "Garden", "River",
    "Archive", "Parade", "Lighthouse", "Circuit", "Summer", "Witness", "Station", "Horizon", "Tide",
)  # fmt: skip

# Views by hour of day (UTC): low at night, a lunch bump, an evening peak.
HOUR_WEIGHTS = (
    3, 2, 1, 1, 1, 1, 1, 2, 3, 3, 3, 4, 5, 5, 4, 4, 5, 7, 10, 13, 15, 14, 10, 6,
)  # fmt: skip

# Public-looking IPv4 first octets (home broadband, mobile carriers).
HOME_IP_OCTETS = (31, 37, 46, 62, 77, 78, 79, 80, 84, 85, 87, 88, 89, 91, 93, 95, 109, 178, 188, 212, 217)
MOBILE_IP_OCTETS = (5, 92, 94, 176, 185)
